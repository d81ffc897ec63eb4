"""Results on disk and in memory: the Dataset schema, netCDF and Zarr, atomic writes, output sinks."""
