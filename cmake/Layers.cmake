# Layers.cmake: one static library per folder with its layer dependencies declared, and the check
# that keeps the arrows pointing down (cmake/check_layers.py).
#
#   alora_layer(<name> DIRS <dir>... [EXCLUDE <file>...] [OWNS <path>...] [DEPS <alora libs>...]
#               [LIBS <other>...])
#       a static library of the *.c files directly in each dir (not subfolders); OWNS: files the
#       target builds some other way (e.g. once per ISA variant) that still belong to the layer
#   alora_executable(<name> [DIRS <dir>...] [SOURCES <file>...] [DEPS ...] [LIBS ...])
#   alora_layer_record(<name> DIRS <dir>... DEPS ...)   a unit the check knows but CMake builds itself
#   alora_layer_check_setup()                         after every unit: the check target and alora_all
#
# Every target includes from the repository root, so a wrong include still compiles: the check is
# what turns it into a build error.

set_property(GLOBAL PROPERTY ALORA_LAYER_UNITS "")
set_property(GLOBAL PROPERTY ALORA_LAYER_LIBS "")
add_custom_target(alora_layer_check)

function(alora_layer_record name)
  cmake_parse_arguments(L "" "" "DIRS;SOURCES;DEPS" ${ARGN})
  string(REPLACE ";" "," dirs "${L_DIRS}")
  string(REPLACE ";" "," srcs "${L_SOURCES}")
  string(REPLACE ";" "," deps "${L_DEPS}")
  set_property(GLOBAL APPEND PROPERTY ALORA_LAYER_UNITS "${name}|${dirs}|${srcs}|${deps}")
endfunction()

function(ali_layer_sources out)
  cmake_parse_arguments(L "" "" "DIRS;EXCLUDE;SOURCES" ${ARGN})
  set(src)
  foreach(d ${L_DIRS})
    file(GLOB s CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${d}/*.c)
    foreach(x ${L_EXCLUDE})
      list(REMOVE_ITEM s ${CMAKE_SOURCE_DIR}/${d}/${x})
    endforeach()
    list(APPEND src ${s})
  endforeach()
  foreach(f ${L_SOURCES})
    list(APPEND src ${CMAKE_SOURCE_DIR}/${f})
  endforeach()
  set(${out} ${src} PARENT_SCOPE)
endfunction()

function(alora_layer name)
  cmake_parse_arguments(L "" "" "DIRS;EXCLUDE;OWNS;DEPS;LIBS" ${ARGN})
  ali_layer_sources(src DIRS ${L_DIRS} EXCLUDE ${L_EXCLUDE})
  add_library(${name} STATIC ${src})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${L_DEPS} ${L_LIBS})
  add_dependencies(${name} alora_layer_check)
  set_property(GLOBAL APPEND PROPERTY ALORA_LAYER_LIBS ${name})
  set(files ${L_OWNS})
  foreach(x ${L_EXCLUDE})
    list(APPEND files "!${x}")
  endforeach()
  alora_layer_record(${name} DIRS ${L_DIRS} SOURCES ${files} DEPS ${L_DEPS})
endfunction()

function(alora_executable name)
  cmake_parse_arguments(L "" "" "DIRS;SOURCES;DEPS;LIBS" ${ARGN})
  ali_layer_sources(src DIRS ${L_DIRS} SOURCES ${L_SOURCES})
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE ${L_DEPS} ${L_LIBS})
  add_dependencies(${name} alora_layer_check)
  alora_layer_record(${name} DIRS ${L_DIRS} SOURCES ${L_SOURCES} DEPS ${L_DEPS})
endfunction()

function(alora_layer_check_setup)
  get_property(units GLOBAL PROPERTY ALORA_LAYER_UNITS)
  get_property(libs GLOBAL PROPERTY ALORA_LAYER_LIBS)
  string(REPLACE ";" "\n" text "${units}")
  file(WRITE ${CMAKE_BINARY_DIR}/layers.txt "${text}\n")
  file(GLOB_RECURSE watched CONFIGURE_DEPENDS
    ${CMAKE_SOURCE_DIR}/common/*.[ch] ${CMAKE_SOURCE_DIR}/kernels/*.[ch] ${CMAKE_SOURCE_DIR}/kernels/*.cu
    ${CMAKE_SOURCE_DIR}/engine/*.[ch] ${CMAKE_SOURCE_DIR}/services/*.[ch] ${CMAKE_SOURCE_DIR}/tools/*.[ch])
  find_program(ALORA_PYTHON3 NAMES python3 REQUIRED)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/layers.ok
    COMMAND ${ALORA_PYTHON3} ${CMAKE_SOURCE_DIR}/cmake/check_layers.py ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/layers.txt
    COMMAND ${CMAKE_COMMAND} -E touch ${CMAKE_BINARY_DIR}/layers.ok
    DEPENDS ${watched} ${CMAKE_SOURCE_DIR}/cmake/check_layers.py ${CMAKE_BINARY_DIR}/layers.txt
    COMMENT "Checking the layer arrows (cmake/check_layers.py)" VERBATIM)
  add_custom_target(ali_layer_check_run DEPENDS ${CMAKE_BINARY_DIR}/layers.ok)
  add_dependencies(alora_layer_check ali_layer_check_run)
  add_library(alora_all INTERFACE)
  target_link_libraries(alora_all INTERFACE ${libs})
endfunction()
