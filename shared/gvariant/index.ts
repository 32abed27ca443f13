export { encode } from "./encode.ts";
export { decode, GVariantDecodeError } from "./decode.ts";
export { parseType, typeString, GVariantTypeError, type GVType } from "./type.ts";
export { variant, isVariant, vardictToMap, mapToVardict, type GVValue, type GVVariant } from "./value.ts";
