# `cmake --install build --prefix P` installs the package an embedder uses:
#   P/bin/ilre                                the program
#   P/lib/libilre.so.*                        the library (the public API of include/ilre/, internals hidden)
#   P/include/ilre/*.h                        the public headers (C++, the OpenAI request handling, the C API ilre.h)
#   P/lib/cmake/ilre/ilreConfig*.cmake        find_package(ilre 0.2 CONFIG REQUIRED) -> ilre::ilre
#   P/lib/pkgconfig/ilre.pc                   pkg-config --cflags --libs ilre
#   P/share/ilre/configs/                     reference.yaml and the calibrated l_R per model
# Every installed file is relocatable: no path of the build or source tree is written into it.
include(CMakePackageConfigHelpers)

install(TARGETS ilre RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ilre_shared EXPORT ilreTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES include/ilre/engine.h include/ilre/config.h include/ilre/error.h include/ilre/export.h
              include/ilre/ilre.h include/ilre/openai.h ${PROJECT_BINARY_DIR}/include/ilre/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ilre)
install(FILES configs/reference.yaml DESTINATION ${CMAKE_INSTALL_DATADIR}/ilre/configs)
install(DIRECTORY configs/models DESTINATION ${CMAKE_INSTALL_DATADIR}/ilre/configs FILES_MATCHING PATTERN "*.yaml")

set(ILRE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ilre)
install(EXPORT ilreTargets NAMESPACE ilre:: DESTINATION ${ILRE_CMAKE_DIR})
configure_package_config_file(cmake/ilreConfig.cmake.in ${PROJECT_BINARY_DIR}/ilreConfig.cmake
                              INSTALL_DESTINATION ${ILRE_CMAKE_DIR})
# 0.x: a minor version may break the API, so 0.2 accepts 0.2.* only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ilreConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ilreConfig.cmake ${PROJECT_BINARY_DIR}/ilreConfigVersion.cmake
        DESTINATION ${ILRE_CMAKE_DIR})

configure_file(cmake/ilre.pc.in ${PROJECT_BINARY_DIR}/ilre.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/ilre.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
