#include "airlock_build_info.h"

#ifndef AIRLOCK_COMMIT
#define AIRLOCK_COMMIT ""
#endif

const char *airlock_build_commit(void) { return AIRLOCK_COMMIT; }
