/* clip.c: being written. */
