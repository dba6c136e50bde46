#!/usr/bin/env bash
# skiff devstack: throw-away certificates for TLS tests, made with openssl.
#
#   certs.sh DIR     writes into DIR (created; existing files replaced):
#     ca.pem ca.key             the test CA
#     server.pem server.key     server certificate (DNS:localhost, IP:127.0.0.1), by the CA
#     client.pem client.key     client certificate (CN=skiff), by the CA
#     client2.pem client2.key   a second client certificate (rotation)
#     expired.pem expired.key   server certificate that expired in 2020, by the CA
#     wronghost.pem wronghost.key  server certificate for DNS:wrong.example only, by the CA
#     other-ca.pem other-ca.key another CA that signed nothing above
#     other-client.pem other-client.key  client certificate by the other CA
#     garbage.pem               not PEM at all
#     server-chain.pem          server.pem followed by ca.pem
#     keystore passwords: none (PEM, PKCS#8 keys)
set -euo pipefail

dir=${1:?usage: certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
rm -rf .ca && mkdir -p .ca/new
: >.ca/index.txt
printf '1000\n' >.ca/serial

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

mkca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 30 -sha256 \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$1.pem" 2>/dev/null
}

# name ca subject extensions [startdate enddate]
sign() {
  local name=$1 ca=$2 subj=$3 ext=$4 start=${5:-} end=${6:-}
  key "$name.key"
  openssl req -new -key "$name.key" -subj "$subj" -out ".ca/$name.csr" 2>/dev/null
  cat >".ca/$name.cnf" <<CNF
[ca]
default_ca = ca
[ca]
dir = .ca
database = .ca/index.txt
serial = .ca/serial
new_certs_dir = .ca/new
certificate = $ca.pem
private_key = $ca.key
default_md = sha256
default_days = 30
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[ext]
basicConstraints = CA:false
$ext
CNF
  local dates=()
  [ -n "$start" ] && dates=(-startdate "$start" -enddate "$end")
  openssl ca -batch -notext -config ".ca/$name.cnf" -extensions ext "${dates[@]}" \
    -in ".ca/$name.csr" -out "$name.pem" 2>/dev/null
}

server_ext='extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1'
client_ext='extendedKeyUsage = clientAuth'

mkca ca "/CN=skiff test CA"
mkca other-ca "/CN=skiff other CA"
sign server ca "/CN=localhost" "$server_ext"
sign client ca "/CN=skiff" "$client_ext"
sign client2 ca "/CN=skiff-rotated" "$client_ext"
sign expired ca "/CN=localhost" "$server_ext" 20200101000000Z 20200102000000Z
sign wronghost ca "/CN=wrong.example" 'extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example'
sign other-client other-ca "/CN=skiff" "$client_ext"
cat server.pem ca.pem >server-chain.pem
printf 'this is not a PEM file\n' >garbage.pem
chmod 644 ./*.pem ./*.key
rm -rf .ca
