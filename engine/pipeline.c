/* pipeline.c: being written. */
