# Writes OUT (a header defining RDSGW_COMMIT) from COMMIT, or else from git in SRC: the short commit, with
# "-dirty" when tracked files differ from it; "unknown" without git. OUT is rewritten only when it changes.
if(NOT COMMIT)
  execute_process(COMMAND git -C ${SRC} rev-parse --short=12 HEAD RESULT_VARIABLE rc OUTPUT_VARIABLE COMMIT
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT rc EQUAL 0 OR NOT COMMIT)
    set(COMMIT unknown)
  else()
    execute_process(COMMAND git -C ${SRC} diff --quiet HEAD -- RESULT_VARIABLE dirty ERROR_QUIET)
    if(NOT dirty EQUAL 0)
      string(APPEND COMMIT -dirty)
    endif()
  endif()
endif()
file(WRITE ${OUT}.tmp "#define RDSGW_COMMIT \"${COMMIT}\"\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
