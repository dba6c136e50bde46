module skiff/examples

go 1.19

require skiff/handler v0.0.0

replace skiff/handler => ../../handler-protocol/go
