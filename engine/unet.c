/* unet.c: being written. */
