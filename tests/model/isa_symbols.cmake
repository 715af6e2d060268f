# The *_avx2.cpp objects of the model library are compiled for x86-64-v3 (model/kernels/isa.h). A weak
# (vague-linkage) symbol they define — an inline function or a template instance from a shared header —
# could be defined by baseline code too, and the linker keeps one copy for both: the v3 copy would then
# crash baseline code on a CPU without AVX2. Their weak symbols must all be their own (namespace avx2,
# the renamed Eigen) or harmless data.
# cmake -DNM=<nm> -DARCHIVE=<libilre_model.a> -P isa_symbols.cmake
execute_process(COMMAND ${NM} -C -A --defined-only ${ARCHIVE} OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${ARCHIVE}")
endif()
string(REPLACE "\n" ";" lines "${listing}")
set(checked 0)
set(bad "")
foreach(line IN LISTS lines)
  if(NOT line MATCHES "_avx2\\.cpp\\.o:")
    continue()
  endif()
  math(EXPR checked "${checked} + 1")
  if(NOT line MATCHES ":[0-9a-f]+ [WVui] ")
    continue()
  endif()
  if(line MATCHES "::avx2::|ilre_eigen_avx2::|DW\\.ref\\.__gxx_personality_v0")
    continue()
  endif()
  list(APPEND bad "${line}")
endforeach()
if(checked EQUAL 0)
  message(FATAL_ERROR "no *_avx2.cpp object with symbols in ${ARCHIVE}")
endif()
if(bad)
  list(JOIN bad "\n  " text)
  message(FATAL_ERROR "x86-64-v3 objects define weak symbols the baseline could share:\n  ${text}")
endif()
message(STATUS "${checked} symbols of the *_avx2.cpp objects checked, none shared")
