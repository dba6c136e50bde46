# librdkafka: the static library devstack/rdkafka.sh builds from the pinned rdkafka-sys crate
# (docs/adr/0016-rdkafka-current.md), found in SKIFF_RDKAFKA_DIR (default: the devstack cache,
# $SKIFF_CACHE/rdkafka/librdkafka-<version>-<flavour>, devstack/rdkafka.sh's FLAVOUR). A system librdkafka (Debian's 2.0.2) is never
# used: without the library there, configuring fails and says how to build it.
#
# Defines SKIFF_RDKAFKA_DIR, SKIFF_RDKAFKA_ARCHIVE (lib/librdkafka.a), SKIFF_RDKAFKA_INCLUDE and,
# outside the image build, the imported target skiff::rdkafka with its system dependencies.

set(SKIFF_RDKAFKA_VERSION 2.12.1)
set(SKIFF_RDKAFKA_FLAVOUR nocyrus)
if(DEFINED ENV{SKIFF_CACHE})
  set(_skiff_cache "$ENV{SKIFF_CACHE}")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_skiff_cache "$ENV{XDG_CACHE_HOME}/skiff")
else()
  set(_skiff_cache "$ENV{HOME}/.cache/skiff")
endif()
set(SKIFF_RDKAFKA_DIR "${_skiff_cache}/rdkafka/librdkafka-${SKIFF_RDKAFKA_VERSION}-${SKIFF_RDKAFKA_FLAVOUR}" CACHE PATH
  "Prefix of the static librdkafka skiff links (devstack/rdkafka.sh build)")

set(SKIFF_RDKAFKA_ARCHIVE "${SKIFF_RDKAFKA_DIR}/lib/librdkafka.a")
set(SKIFF_RDKAFKA_INCLUDE "${SKIFF_RDKAFKA_DIR}/include")
set(_rdkafka_header "${SKIFF_RDKAFKA_INCLUDE}/librdkafka/rdkafka.h")
if(NOT EXISTS "${SKIFF_RDKAFKA_ARCHIVE}" OR NOT EXISTS "${_rdkafka_header}")
  message(FATAL_ERROR
    "librdkafka ${SKIFF_RDKAFKA_VERSION} not found in SKIFF_RDKAFKA_DIR=${SKIFF_RDKAFKA_DIR} "
    "(no lib/librdkafka.a or include/librdkafka/rdkafka.h). Build it once with "
    "`devstack/rdkafka.sh build` (devstack/setup.sh does it), or pass "
    "-DSKIFF_RDKAFKA_DIR=<prefix> of such a build. A system librdkafka is not used.")
endif()

# The version the header declares: 0xMMmmrrxx.
file(STRINGS "${_rdkafka_header}" _rdkafka_line REGEX "^#define RD_KAFKA_VERSION +0x[0-9a-fA-F]+")
string(REGEX REPLACE ".*0x([0-9a-fA-F]+).*" "\\1" _rdkafka_hex "${_rdkafka_line}")
math(EXPR _rdkafka_num "0x${_rdkafka_hex}" OUTPUT_FORMAT DECIMAL)
math(EXPR _rdkafka_major "(${_rdkafka_num} >> 24) & 255")
math(EXPR _rdkafka_minor "(${_rdkafka_num} >> 16) & 255")
math(EXPR _rdkafka_patch "(${_rdkafka_num} >> 8) & 255")
set(_rdkafka_found "${_rdkafka_major}.${_rdkafka_minor}.${_rdkafka_patch}")
if(_rdkafka_found VERSION_LESS SKIFF_RDKAFKA_VERSION)
  message(FATAL_ERROR "${SKIFF_RDKAFKA_DIR} holds librdkafka ${_rdkafka_found}; skiff needs "
    ">= ${SKIFF_RDKAFKA_VERSION}: run `devstack/rdkafka.sh build`.")
endif()
message(STATUS "librdkafka ${_rdkafka_found} (static): ${SKIFF_RDKAFKA_ARCHIVE}")

if(NOT SKIFF_IMAGE_BUILD)
  # What the library was built with (devstack/rdkafka.sh): TLS, the compressions, libcurl for
  # the OIDC token client. Shared system libraries here. libsasl2 too: a build directory
  # configured before the Cyrus-less build (docs/adr/0020) keeps the older prefix, whose
  # archive still needs it; unused otherwise.
  pkg_check_modules(RDKAFKA_DEPS REQUIRED IMPORTED_TARGET
    libssl libcrypto libsasl2 libzstd liblz4 zlib libcurl)
  find_package(Threads REQUIRED)
  add_library(skiff::rdkafka STATIC IMPORTED)
  set_target_properties(skiff::rdkafka PROPERTIES
    IMPORTED_LOCATION "${SKIFF_RDKAFKA_ARCHIVE}"
    INTERFACE_INCLUDE_DIRECTORIES "${SKIFF_RDKAFKA_INCLUDE}"
    INTERFACE_LINK_LIBRARIES "PkgConfig::RDKAFKA_DEPS;Threads::Threads;m;dl")
endif()
