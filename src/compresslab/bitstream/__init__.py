"""The file codec: the container format and its bounds, compress/decompress of image files through a model, and the
hostile-input fuzzer. Sits above ``evaluation`` (it writes results and runs LOF through it)."""
