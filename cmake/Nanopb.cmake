# Nanopb.cmake: generate nanopb C sources from a .proto at build time (Debian's nanopb 0.4.7).
#
#   alora_nanopb_generate(<proto> OPTIONS <file> OUT_DIR <dir> SRCS <var> HDRS <var>)
#
# Runs /usr/bin/nanopb_generator.py directly (its shebang is Debian's /usr/bin/python3; a pyenv
# `python3` first on PATH lacks the `google.protobuf` module). Outputs <dir>/<name>.pb.{c,h}.
# Never define PB_FIELD_32BIT: Debian's libprotobuf-nanopb.a is built with 16-bit pb_size_t.
find_package(nanopb CONFIG REQUIRED)
find_program(NANOPB_GENERATOR NAMES nanopb_generator.py nanopb_generator
  PATHS /usr/bin NO_DEFAULT_PATH)
find_program(NANOPB_GENERATOR NAMES nanopb_generator.py nanopb_generator REQUIRED)

function(alora_nanopb_generate proto)
  cmake_parse_arguments(A "" "OPTIONS;OUT_DIR;SRCS;HDRS" "" ${ARGN})
  get_filename_component(abs ${proto} ABSOLUTE)
  get_filename_component(dir ${abs} DIRECTORY)
  get_filename_component(base ${abs} NAME_WE)
  set(out ${A_OUT_DIR})
  set(opts)
  set(deps ${abs})
  if(A_OPTIONS)
    get_filename_component(optabs ${A_OPTIONS} ABSOLUTE)
    set(opts -f ${optabs})
    list(APPEND deps ${optabs})
  endif()
  add_custom_command(
    OUTPUT ${out}/${base}.pb.c ${out}/${base}.pb.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
    COMMAND ${NANOPB_GENERATOR} -q -I ${dir} -D ${out} ${opts} ${abs}
    DEPENDS ${deps}
    COMMENT "nanopb: ${base}.proto"
    VERBATIM)
  set(${A_SRCS} ${out}/${base}.pb.c PARENT_SCOPE)
  set(${A_HDRS} ${out}/${base}.pb.h PARENT_SCOPE)
endfunction()
