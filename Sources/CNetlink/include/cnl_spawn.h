#ifndef CNL_SPAWN_H
#define CNL_SPAWN_H
int cnl_placeholder_spawn(void);
#endif
