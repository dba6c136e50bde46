module skiff/handler

go 1.19
