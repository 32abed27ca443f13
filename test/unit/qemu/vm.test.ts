import { describe, expect, it } from "vitest";
import { AARCH64_FIRMWARE, accelFromEnv, qemuArgs } from "../../../qemu/vm.ts";

const option = (args: string[], name: string) => args[args.indexOf(name) + 1];

describe("qemu command line", () => {
  it("boots amd64 disks on a pc machine with BIOS, and arm64 ones on virt with Debian's UEFI firmware", () => {
    const amd64 = qemuArgs({ disk: "/d.img", serialLog: "/s.log" });
    expect(option(amd64, "-machine")).toBe("pc");
    expect(amd64).not.toContain("-bios");
    const arm64 = qemuArgs({ disk: "/d.img", serialLog: "/s.log", arch: "arm64" });
    expect(option(arm64, "-machine")).toBe("virt");
    expect(option(arm64, "-bios")).toBe(AARCH64_FIRMWARE);
    expect(option(arm64, "-cpu")).toBe("max,pauth-impdef=on");
    for (const args of [amd64, arm64]) {
      expect(option(args, "-serial")).toBe("file:/s.log");
      expect(option(args, "-drive")).toBe("file=/d.img,format=raw,if=virtio,cache=unsafe");
      expect(args).toContain("i6300esb");
      // The card's netdev has a name QMP's set_link can use.
      expect(option(args, "-netdev")).toBe("user,id=net0");
      expect(args).toContain("virtio-net-pci,netdev=net0");
    }
  });

  it("logs the guest's writes and flushes through blklogwrites when asked, on a raw disk only", () => {
    const args = qemuArgs({ disk: "/d.raw", serialLog: "/s.log", diskCache: "none", writeLog: "/w.log" });
    expect(option(args, "-drive")).toBe("if=virtio,cache=none,driver=blklogwrites,file.driver=file,file.filename=/d.raw,file.cache.no-flush=on,log.driver=file,log.filename=/w.log,log.cache.no-flush=on,log-super-update-interval=1000000000000");
    expect(() => qemuArgs({ disk: "/d.qcow2", diskFormat: "qcow2", serialLog: "/s.log", diskCache: "none", writeLog: "/w.log" })).toThrow(/raw disk/);
    expect(() => qemuArgs({ disk: "/d.raw", serialLog: "/s.log", writeLog: "/w.log" })).toThrow(/diskCache 'none'/);
  });

  it("adds a QMP socket and a guest clock start only when asked", () => {
    const plain = qemuArgs({ disk: "/d.img", serialLog: "/s.log" });
    expect(plain).not.toContain("-qmp");
    expect(plain).not.toContain("-rtc");
    const args = qemuArgs({ disk: "/d.img", serialLog: "/s.log", qmpSocket: "/run/q.sock", rtcBase: new Date("2026-12-06T07:08:09.123Z") });
    expect(option(args, "-qmp")).toBe("unix:/run/q.sock,server=on,wait=off");
    expect(option(args, "-rtc")).toBe("base=2026-12-06T07:08:09");
  });

  it("refuses KVM for an arm64 guest and a bad APT_OSTREE_QEMU_ACCEL", () => {
    expect(() => qemuArgs({ disk: "/d.img", serialLog: "/s.log", arch: "arm64", accel: "kvm" })).toThrow("KVM cannot run an arm64 guest on this x86_64 host");
    expect(option(qemuArgs({ disk: "/d.img", serialLog: "/s.log", accel: "kvm" }), "-cpu")).toBe("host");
    expect(() => accelFromEnv({ APT_OSTREE_QEMU_ACCEL: "hvf" })).toThrow("APT_OSTREE_QEMU_ACCEL must be tcg or kvm, not 'hvf'");
  });

  it("adds the test console's virtio serial port on a Unix socket only when asked", () => {
    expect(qemuArgs({ disk: "/d.img", serialLog: "/s.log" })).not.toContain("-chardev");
    const args = qemuArgs({ disk: "/d.img", serialLog: "/s.log", testConsoleSocket: "/run/c.sock" });
    expect(option(args, "-chardev")).toBe("socket,id=testconsole,path=/run/c.sock,server=on,wait=off");
    expect(args).toContain("virtserialport,chardev=testconsole,name=org.apt-ostree.test-console");
  });
});
