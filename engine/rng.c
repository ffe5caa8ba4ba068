/* rng.c: being written. */
