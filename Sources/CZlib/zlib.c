#include "CZlib.h"

int airlock_inflate_init(z_stream *stream) {
    return inflateInit(stream);
}
