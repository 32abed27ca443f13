/** A CA certificate an operator hands to a device (image build --ca): read, and checked to be a CA, so a disk never pins the wrong file. */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { AptOstreeError } from "../../shared/errors.ts";

export class CaFileError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_TLS_CA_FILE", message, { cause });
  }
}

/** The file's PEM text, when it holds a CA certificate that is valid now. */
export async function readCaCertificate(file: string, now = new Date()): Promise<string> {
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new CaFileError(`cannot read the CA certificate ${file}: ${error.code ?? error.message}`, error);
  });
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(text);
  } catch (error) {
    throw new CaFileError(`${file} is not a PEM certificate (pass the ca.pem 'tls init' or serve wrote)`, error);
  }
  if (!certificate.ca) throw new CaFileError(`${file} is not a CA certificate (it is ${certificate.subject.replace(/\n/g, ", ")}'s own); pass the ca.pem beside it`);
  if (Date.parse(certificate.validTo) < now.getTime()) throw new CaFileError(`the CA certificate ${file} expired on ${certificate.validTo}`);
  return text;
}
