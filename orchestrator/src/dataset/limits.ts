/** Task files up to this size in all are checked by `bsft validate` unless told otherwise. */
export const VALIDATE_DATA_MAX_BYTES = 64 * 1024 * 1024;
