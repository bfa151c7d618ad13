"""Writers of virtual datasets: kerchunk references (JSON, parquet) and Icechunk."""
