/* compvis.c: being written. */
