"""kerchunk references: :class:`KerchunkJSONParser`, :class:`KerchunkParquetParser`."""

from virtualizarr.parsers.kerchunk.parser import KerchunkJSONParser, KerchunkParquetParser

__all__ = ["KerchunkJSONParser", "KerchunkParquetParser"]
