#include "eval/needles.h"

#include <random>

namespace ilre::eval {
namespace {

const char* const kLabels[] = {"amber", "silver", "crimson", "jade", "cobalt", "ivory", "copper", "violet",
                               "scarlet", "olive", "indigo", "golden", "azure", "ochre", "teal", "maroon"};
const char* const kWords[] = {"quiet", "otter", "river", "falcon", "meadow", "lantern", "harbor", "willow",
                              "ember", "glacier", "thistle", "cedar", "marble", "sparrow", "canyon", "orchid"};

const char* const kCities[] = {"Lisbon", "Krakow", "Tromso", "Valencia", "Ghent", "Turku", "Porto", "Bergen",
                               "Lyon", "Graz", "Aarhus", "Split"};
const char* const kNames[] = {"Doctor Elsa Brandt", "Uncle Tobias", "Sister Ines", "Professor Okafor",
                              "Old Mrs Lindqvist", "Sergeant Alvarez", "Farmer Joss", "Lady Penrose"};
const char* const kTimes[] = {"twenty past six", "a quarter to eleven", "half past four", "ten to midnight",
                              "five past seven", "a quarter past two"};
const char* const kFruits[] = {"quince", "persimmon", "gooseberry", "apricot", "damson", "lychee"};
const char* const kPlaces[] = {"behind the old piano", "inside the flour barrel", "under the loose floorboard",
                               "beneath the rain barrel", "in the hollow oak"};

std::string word(std::mt19937_64& rng) { return kWords[rng() % std::size(kWords)]; }

template <size_t N>
std::string pick(std::mt19937_64& rng, const char* const (&items)[N]) {
  return items[rng() % N];
}

}  // namespace

NeedleSpec passkey_needle(int digits, int label, uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + static_cast<uint64_t>(digits) * 31 + static_cast<uint64_t>(label));
  std::string key;
  key += static_cast<char>('1' + rng() % 9);  // no leading zero
  for (int i = 1; i < digits; ++i) key += static_cast<char>('0' + rng() % 10);
  const std::string name = kLabels[static_cast<size_t>(label) % std::size(kLabels)];
  return {"passkey", "The pass key for the " + name + " vault is " + key + ".",
          "What is the pass key for the " + name + " vault?", key};
}

NeedleSpec kv_needle(int index, uint64_t seed) {
  std::mt19937_64 rng(seed * 104729 + static_cast<uint64_t>(index));
  const std::string key = word(rng) + "-" + word(rng) + "-" + std::to_string(10 + rng() % 90);
  const std::string value = word(rng) + "-" + word(rng) + "-" + std::to_string(100 + rng() % 900);
  return {"kv", "The value for the key " + key + " is " + value + ".", "What is the value for the key " + key + "?",
          value};
}

NeedleSpec fact_needle(int index, uint64_t seed) {
  std::mt19937_64 rng(seed * 15485863 + static_cast<uint64_t>(index));
  const std::string name = pick(rng, kNames);
  switch ((static_cast<uint64_t>(index) + seed) % 4) {
    case 0: {
      const std::string city = pick(rng, kCities), time = pick(rng, kTimes);
      return {"fact", "The last ferry to " + city + " departs at " + time + ".",
              "When does the last ferry to " + city + " depart?", time};
    }
    case 1: {
      const std::string place = pick(rng, kPlaces);
      return {"fact", name + " hid the silver compass " + place + ".", "Where did " + name + " hide the silver compass?",
              place};
    }
    case 2: {
      const std::string fruit = pick(rng, kFruits);
      return {"fact", "The favourite fruit of " + name + " has always been the " + fruit + ".",
              "What is the favourite fruit of " + name + "?", fruit};
    }
    default: {
      const std::string city = pick(rng, kCities);
      return {"fact", name + " was born in the harbour town of " + city + ".", "Where was " + name + " born?", city};
    }
  }
}

}  // namespace ilre::eval
