// Random hexadecimal names (request ids, document ids, scratch folder suffixes): unpredictable, so two
// processes sharing a data directory or a client guessing ids do not collide.
#pragma once

#include <cstddef>
#include <string>

namespace ilre::api {

std::string random_hex(size_t digits);

}  // namespace ilre::api
