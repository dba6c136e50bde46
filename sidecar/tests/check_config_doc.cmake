# Fails when docs/configuration.md differs from what `skiff config docs` generates.
execute_process(COMMAND ${SKIFF} config docs OUTPUT_VARIABLE generated RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "skiff config docs failed (${rc})")
endif()
file(READ ${DOC} committed)
if(NOT generated STREQUAL committed)
  message(FATAL_ERROR "docs/configuration.md is stale: regenerate with `skiff config docs > docs/configuration.md`")
endif()
