"""What the measuring machine was: CPU, cores, SIMD, governor, Pi model, temperature, throttling, load.

Whether int8 beats fp32 depends on the instruction set: x86 with VNNI (or ARM with the dot-product
extension) multiplies int8 several times faster than fp32, plain AVX2 or NEON hardly at all. The flags
that decide it are recorded so that an int8/fp32 ratio can be read against them.

Latency on a Pi depends as much on the governor, the temperature and under-voltage throttling as on the
model, so every run records them before and after. One POSIX shell script gathers them, run locally with
``sh -s`` or on a device over ssh with the very same text, and one parser reads both — the local and the
remote path cannot drift apart.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import BenchError

# key=value lines; every probe is optional (missing files and commands print an empty value).
SCRIPT = r"""
kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n' ' ')"; }
kv hostname "$(uname -n)"
kv machine "$(uname -m)"
kv kernel "$(uname -r)"
kv os "$( (. /etc/os-release && printf '%s' "$PRETTY_NAME") 2>/dev/null)"
m="$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
[ -n "$m" ] || m="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)"
kv cpu_model "$m"
kv cores "$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
f='avx2|avx512f|avx512_vnni|avx_vnni|asimd|asimddp|i8mm'
kv simd "$(grep -m 1 -o -w -E "$f" /proc/cpuinfo 2>/dev/null | sort -u)"
c=/sys/devices/system/cpu/cpu0/cpufreq
kv governor "$(cat $c/scaling_governor 2>/dev/null)"
kv cur_freq_khz "$(cat $c/scaling_cur_freq 2>/dev/null)"
kv max_freq_khz "$(cat $c/cpuinfo_max_freq 2>/dev/null)"
kv device_model "$(tr -d '\000' < /proc/device-tree/model 2>/dev/null)"
t=""
for z in /sys/class/thermal/thermal_zone*/temp; do [ -r "$z" ] && { t="$(cat "$z")"; break; }; done
kv temp_millic "$t"
if command -v vcgencmd >/dev/null 2>&1; then
  kv vcgencmd_temp "$(vcgencmd measure_temp 2>/dev/null)"
  kv throttled "$(vcgencmd get_throttled 2>/dev/null)"
fi
kv loadavg "$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null)"
kv mem_total_kb "$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo 2>/dev/null)"
"""

# vcgencmd get_throttled bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under-voltage now",
    1: "arm frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


@dataclass
class SysInfo:
    hostname: str = ""
    machine: str = ""
    kernel: str = ""
    os: str = ""
    cpu_model: str = ""
    cores: int | None = None
    simd: list[str] = field(default_factory=list)  # the int8-relevant CPU flags (AVX2, VNNI, NEON dot product)
    governor: str | None = None
    cur_freq_mhz: float | None = None
    max_freq_mhz: float | None = None
    device_model: str | None = None  # /proc/device-tree/model, e.g. "Raspberry Pi 4 Model B Rev 1.4"
    temperature_c: float | None = None
    temperature_source: str | None = None
    throttled: str | None = None  # raw hex from vcgencmd, None when vcgencmd is absent
    throttle_flags: list[str] = field(default_factory=list)
    loadavg: str | None = None
    mem_total_mb: float | None = None

    @property
    def is_raspberry_pi(self) -> bool:
        return bool(self.device_model and "raspberry pi" in self.device_model.lower())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["is_raspberry_pi"] = self.is_raspberry_pi
        return out


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def decode_throttled(raw: str) -> list[str]:
    """'throttled=0x50005' → the names of the set bits."""
    match = re.search(r"0x[0-9a-fA-F]+", raw)
    if not match:
        return []
    value = int(match.group(0), 16)
    return [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]


def parse(text: str) -> SysInfo:
    """Parse the key=value output of ``SCRIPT``."""
    kv: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            kv[key.strip()] = value.strip()
    info = SysInfo(
        hostname=kv.get("hostname", ""),
        machine=kv.get("machine", ""),
        kernel=kv.get("kernel", ""),
        os=kv.get("os", ""),
        cpu_model=kv.get("cpu_model", ""),
        governor=kv.get("governor") or None,
        device_model=kv.get("device_model") or None,
        loadavg=kv.get("loadavg") or None,
        simd=kv.get("simd", "").split(),
    )
    cores = _num(kv.get("cores"))
    info.cores = int(cores) if cores else None
    for src, dst in (("cur_freq_khz", "cur_freq_mhz"), ("max_freq_khz", "max_freq_mhz")):
        khz = _num(kv.get(src))
        setattr(info, dst, khz / 1000 if khz else None)
    mem = _num(kv.get("mem_total_kb"))
    info.mem_total_mb = round(mem / 1024, 1) if mem else None
    vc = re.search(r"temp=([0-9.]+)", kv.get("vcgencmd_temp", ""))
    millic = _num(kv.get("temp_millic"))
    if vc:
        info.temperature_c, info.temperature_source = float(vc.group(1)), "vcgencmd measure_temp"
    elif millic is not None:
        info.temperature_c, info.temperature_source = millic / 1000, "/sys/class/thermal"
    if kv.get("throttled"):
        info.throttled = kv["throttled"].split("=")[-1]
        info.throttle_flags = decode_throttled(kv["throttled"])
    return info


def collect_local(timeout: float = 20) -> SysInfo:
    """Run ``SCRIPT`` on this machine."""
    try:
        proc = subprocess.run(["sh", "-s"], input=SCRIPT, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot read this machine's system info ({exc})") from None
    return parse(proc.stdout)
