/* fw_hooks.h - force-included (-include) into dssdn_classifier.c of the emulated-board firmware: the test
 * hooks around the model call, implemented in classify_firmware.c. */
#ifndef DSSDN_FW_HOOKS_H
#define DSSDN_FW_HOOKS_H

#include <stdint.h>

void fw_before_invoke(const int8_t *input);
void fw_after_invoke(void);

#define DSSDN_CLASSIFIER_BEFORE_INVOKE(input) fw_before_invoke(input)
#define DSSDN_CLASSIFIER_AFTER_INVOKE() fw_after_invoke()

#endif
