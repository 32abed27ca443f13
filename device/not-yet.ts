import { defineCommand } from "../shared/cli/command.ts";
import { AptOstreeError } from "../shared/errors.ts";

/** A command named in rpm-ostree's vocabulary whose implementation lands with the device-agent issue. */
export function notYetCommand(name: string, description: string) {
  return defineCommand({
    name,
    description,
    async run() {
      throw new AptOstreeError("E_NOT_IMPLEMENTED", `'${name}' is not implemented yet: it lands with the device agent`);
    },
  });
}
