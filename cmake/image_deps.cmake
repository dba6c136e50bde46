# SKIFF_IMAGE_BUILD: the skiff of the container image (see Dockerfile, docs/operations.md).
#
# In a container nobody shares the pages of shared libraries, so each of the ~43 that the normal
# build maps (libcurl's dependency tree, OpenSSL, librdkafka, avro, ...) is charged to the pod.
# Here the third-party libraries are linked from their static archives instead (Debian's -dev
# packages; libcurl from Debian's curl source built with HTTP/HTTPS only, by
# devstack/image/curl.sh, found through CMAKE_PREFIX_PATH; librdkafka from SKIFF_RDKAFKA_DIR,
# cmake/rdkafka.cmake, without Cyrus SASL), only glibc stays shared, and unused
# sections of skiff's own code are dropped; relative relocations are packed (DT_RELR, glibc
# 2.36). The normal build is unchanged.
#
# Defines skiff_deps, the link interface skiff_core uses in place of PkgConfig::DEPS.

# Order matters for static archives: users before what they use (the group resolves cycles).
set(SKIFF_IMAGE_ARCHIVES
  curl avro snappy jansson protobuf-c nghttp2 event_openssl event_pthreads event
  ssl crypto lz4 zstd lzma z)

set(archives ${SKIFF_RDKAFKA_ARCHIVE})
foreach(name ${SKIFF_IMAGE_ARCHIVES})
  find_library(SKIFF_ARCHIVE_${name} NAMES lib${name}.a REQUIRED)
  list(APPEND archives ${SKIFF_ARCHIVE_${name}})
endforeach()
message(STATUS "skiff image build: static ${SKIFF_ARCHIVE_curl}, ${SKIFF_RDKAFKA_ARCHIVE} and ${SKIFF_IMAGE_ARCHIVES}")

add_library(skiff_deps INTERFACE)
target_include_directories(skiff_deps INTERFACE ${DEPS_INCLUDE_DIRS})
# A system header, as outside the image build (its declarations trip -Wignored-qualifiers).
target_include_directories(skiff_deps SYSTEM INTERFACE ${SKIFF_RDKAFKA_INCLUDE})
target_compile_definitions(skiff_deps INTERFACE CURL_STATICLIB)
# snappy is C++: its runtime is linked statically too; glibc (libc, libm, libdl, libpthread,
# libresolv) stays shared.
target_link_libraries(skiff_deps INTERFACE
  -Wl,--start-group ${archives} -Wl,--end-group
  -Wl,-Bstatic stdc++ -Wl,-Bdynamic -static-libgcc dl pthread resolv m)
target_link_options(skiff_deps INTERFACE -Wl,--gc-sections -Wl,--as-needed -Wl,-O1 -Wl,-z,pack-relative-relocs)
add_compile_options(-ffunction-sections -fdata-sections)
