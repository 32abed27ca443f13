/**
 * Where an image keeps the public key of its server's APT repository (compose --apt-keyring),
 * relative to the tree's root: the device's layering trusts that repository through it.
 */
export const ARCHIVE_KEYRING_IN_IMAGE = "usr/share/keyrings/apt-ostree-archive.gpg";
