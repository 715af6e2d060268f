// guarded(fn): runs fn, which returns Result<T>, and turns any exception escaping it (bad_alloc, a model
// conversion's Exception, nlohmann's json::exception on a non-UTF-8 string) into an error, so none
// crosses the storage API. ilre::catch_to_result does the same for functions returning a plain T.
#pragma once

#include <exception>
#include <new>

#include "ilre/error.h"

namespace ilre::storage {

template <class Fn>
auto guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Exception& e) {
    return tl::unexpected(e.error());
  } catch (const std::bad_alloc&) {
    return make_error(errc::internal, "out of memory");
  } catch (const std::exception& e) {
    return make_error(errc::internal, e.what());
  }
}

}  // namespace ilre::storage
