// Errors every layer raises about its inputs; the CLI prints them as one line naming the file (and field).

/** A file or value that is not what it should be (the message names it and what was expected). */
export class FormatError extends Error {
  override name = "FormatError";
}
