#include "cnl_spawn.h"
int cnl_placeholder_spawn(void) { return 0; }
