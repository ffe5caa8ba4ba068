/* unicode.c: being written. */
