//! TODO(auth helper): argon2id password hashes (PHC strings) for console users.
