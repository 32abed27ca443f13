import { AptOstreeError } from "../../shared/errors.ts";

/** A package layering that cannot be done, with the reason an admin can act on. */
export class LayeringError extends AptOstreeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_LAYERING", message, options);
  }
}
