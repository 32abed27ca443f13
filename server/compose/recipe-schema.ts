/**
 * Keys a recipe fragment may set. Names follow rpm-ostree's treefile where it has one
 * (`ref`, `packages`, `include`, `postprocess`, `add-files`, `remove-files`, `units`,
 * `default-target`), plus APT's (`suite`, `mirror`, `components`, `architecture`).
 */
import { z } from "zod";

const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, "is not a Debian package name");
/** A path inside the image: no `..` segment may lead outside it. */
const insideImage = (what: string) => z.string().refine((path) => !path.split("/").includes(".."), `${what} must not contain '..'`);
const debianArch = z.enum(["amd64", "arm64", "armhf", "i386", "riscv64", "ppc64el", "s390x"]);

export const FragmentSchema = z
  .object({
    include: z.union([z.string(), z.array(z.string())]),
    // distro
    distro: z.string().regex(/^[a-z0-9-]+$/),
    suite: z.string().regex(/^[a-z0-9-]+$/),
    mirror: z.string().url(),
    components: z.array(z.string().regex(/^[a-z-]+$/)).min(1),
    updates: z.boolean(),
    security: z.union([z.literal(false), z.object({ mirror: z.string().url(), suite: z.string() }).strict()]),
    variant: z.enum(["minbase", "essential", "required", "important", "standard"]),
    "source-date-epoch": z.number().int().nonnegative(),
    // machine
    machine: z.string().regex(/^[a-z0-9-]+$/),
    architecture: debianArch,
    "kernel-package": packageName,
    "bootloader-packages": z.array(packageName),
    "kernel-args": z.array(z.string().min(1)),
    "initramfs-args": z.array(z.string().min(1)),
    // image
    ref: z.string().regex(/^[A-Za-z0-9_${}.\-/]+$/),
    packages: z.array(packageName),
    units: z.array(z.string().regex(/^[A-Za-z0-9@_.\\:-]+\.(service|socket|timer|path|target|mount)$/, "is not a systemd unit name")),
    "default-target": z.string().regex(/^[A-Za-z0-9_.-]+\.target$/),
    "add-files": z.array(z.tuple([z.string().min(1), insideImage("a destination").pipe(z.string().regex(/^\//, "destination must be absolute"))])),
    "remove-files": z.array(insideImage("a path").pipe(z.string().regex(/^[^/].*/, "must be relative to the root, without a leading /"))),
    postprocess: z.array(z.string().min(1)),
    "postprocess-script": z.string().min(1),
    /** Install the apt-ostree device agent (bundle, units, defaults); needs `nodejs` in packages. */
    "apt-ostree-agent": z.boolean(),
  })
  .partial()
  .strict();

export type Fragment = z.infer<typeof FragmentSchema>;

/** Keys whose lists add up across includes (rpm-ostree semantics); every other key is overridden by the including file. */
export const LIST_KEYS = ["packages", "units", "add-files", "remove-files", "postprocess", "bootloader-packages", "kernel-args", "initramfs-args"] as const;
