#ifndef AIRLOCK_BUILD_INFO_H
#define AIRLOCK_BUILD_INFO_H

/// The commit the binary was built from, as scripts/install gives it (AIRLOCK_COMMIT in
/// the environment of `swift build`, which Package.swift turns into a define); "" otherwise.
const char *airlock_build_commit(void);

#endif
