"""Read cconv.show_config() without assuming its exact format (dict or printed text)."""
import contextlib
import io
import re


def config_text(cconv):
    """Everything show_config() returns or prints, as one lower-case string."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ret = cconv.show_config()
    parts = [buf.getvalue()]
    if ret is not None:
        parts.append(repr(ret))
    return "\n".join(parts).lower()


def config_dict(cconv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ret = cconv.show_config()
    return ret if isinstance(ret, dict) else None


_YES = ("true", "yes", "enabled", "on", "1")
_NO = ("false", "no", "disabled", "off", "0", "none")


def _flatten(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}".lower()
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def openmp_enabled(cconv):
    """True / False when show_config() says so, None when it cannot be told."""
    d = config_dict(cconv)
    if d is not None:
        for k, v in _flatten(d):
            if "openmp" in k or k.endswith("omp"):
                if isinstance(v, bool):
                    return v
                if isinstance(v, (int, float)):
                    return bool(v)
                sv = str(v).strip().lower()
                if sv in _YES:
                    return True
                if sv in _NO or sv == "":
                    return False
                if re.search(r"\d", sv):  # a version string such as "201511" or "4.5"
                    return True
    text = config_text(cconv)
    for line in text.splitlines():
        if "openmp" in line:
            rest = line.split("openmp", 1)[1]
            words = re.findall(r"[a-z0-9.]+", rest)
            if not words:
                continue
            if words[0] in _NO or "not" in words[:2] or "disabled" in words:
                return False
            if words[0] in _YES or re.match(r"\d", words[0]):
                return True
    return None


def active_isa(cconv):
    """'avx512' / 'avx2' / 'generic' as reported by show_config(), or None."""
    d = config_dict(cconv)
    if d is not None:
        for k, v in _flatten(d):
            if "isa" in k and isinstance(v, str) and v.lower() in ("avx512", "avx2", "generic"):
                return v.lower()
    text = config_text(cconv)
    for line in text.splitlines():
        if "isa" in line:
            m = re.search(r"\b(avx512|avx2|generic)\b", line)
            if m:
                return m.group(1)
    return None
