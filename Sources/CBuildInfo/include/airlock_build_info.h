#ifndef AIRLOCK_BUILD_INFO_H
#define AIRLOCK_BUILD_INFO_H

/// The commit the binary was built from, as given at build time by
/// `-Xcc -DAIRLOCK_COMMIT='"…"'` (scripts/install, scripts/package); "" otherwise.
const char *airlock_build_commit(void);

#endif
