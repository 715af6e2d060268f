// ILRE_API marks what libilre.so exports: the public API in include/ilre/. Everything else in the library
// (the model, the runtime, the stages) is built with hidden visibility, so an embedder links against
// the API alone and cannot clash with ilre's internals.
#pragma once

#if defined(_WIN32)
#define ILRE_API
#else
#define ILRE_API __attribute__((visibility("default")))
#endif
