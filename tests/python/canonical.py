"""MySQL's text form of a value read back from Kafka or the lake, for comparison with the
source (see tests/support/stack.rs, source_table). `tag` is the field's binlake.type or
Avro logical type."""
import datetime
import decimal


def canonical(v, tag):
    if v is None:
        return None
    if tag == "time":
        sign = "-" if v < 0 else ""
        v = abs(v)
        secs, micros = divmod(v, 1_000_000)
        return f"{sign}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{micros:06d}"
    if tag == "bit":
        return str(int.from_bytes(v, "big"))
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, bytes):
        return v.hex().upper()
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, float):
        return repr(v)
    return str(v)


def field_tags(value_schema):
    """name -> (MySQL column name, binlake.type or logical type) of a value schema."""
    out = {}
    for f in value_schema["fields"]:
        ty = f["type"]
        if isinstance(ty, list):
            ty = [x for x in ty if x != "null"][0]
        tag = None
        if isinstance(ty, dict):
            tag = ty.get("binlake.type") or ty.get("logicalType")
        out[f["name"]] = (f.get("binlake.column", f["name"]), tag)
    return out
