// Preloaded (`node --require`) into a process whose JavaScript clock must run off by
// APT_OSTREE_TEST_CLOCK_OFFSET_MS, as a device without a battery-backed clock or NTP does.
// OpenSSL keeps the machine's time: certificate validity is tested in the VM (test/soak/faults).
const offset = Number(process.env.APT_OSTREE_TEST_CLOCK_OFFSET_MS || 0);
const RealDate = Date;
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = SkewedDate;
