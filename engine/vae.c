/* vae.c: being written. */
