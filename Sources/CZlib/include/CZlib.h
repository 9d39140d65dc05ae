#ifndef AIRLOCK_CZLIB_H
#define AIRLOCK_CZLIB_H

/* zlib for the git gateway's pack reader, which inflates each object of a pushed pack.
 * `inflateInit` is a macro (it passes the library's version and the stream's size), so
 * Swift cannot call it: this wrapper does. */
#include <zlib.h>

/* inflateInit(stream): Z_OK, or a zlib error code. */
int airlock_inflate_init(z_stream *stream);

#endif
