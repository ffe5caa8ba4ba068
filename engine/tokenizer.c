/* tokenizer.c: being written. */
