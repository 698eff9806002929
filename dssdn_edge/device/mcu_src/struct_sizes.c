/* struct_sizes.c - compiled, never linked: the sizes of the state structs as the sizes of arrays, read back
 * with arm-none-eabi-nm -S. They split the classifier's static state between the front end (its
 * dssdn_features_t, inside dssdn_classifier_t) and the glue in the measured footprint. */
#include "dssdn_classifier.h"

char dssdn_sizeof_features[sizeof(dssdn_features_t)];
char dssdn_sizeof_classifier[sizeof(dssdn_classifier_t)];
