/* scheduler.c: being written. */
