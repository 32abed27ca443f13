import { describe, expect, it } from "vitest";
import { atomicWriteTarget } from "../../../shared/fs/atomic-write.ts";

describe("atomicWriteTarget", () => {
  it("names the file a temporary was for, and nothing for other names", () => {
    expect(atomicWriteTarget(".state.json.tmp-123-abcd0123")).toBe("state.json");
    expect(atomicWriteTarget(".a.tmp-b.tmp-9-ff")).toBe("a.tmp-b");
    expect(atomicWriteTarget("state.json")).toBeNull();
    expect(atomicWriteTarget(".hidden")).toBeNull();
    expect(atomicWriteTarget(".tmp-1-ab")).toBeNull();
  });
});
