# The pod sandbox image: pause built from k8s.io/kubernetes build/pause/linux/pause.c (gcc -static),
# as registry.k8s.io/pause is.
FROM scratch
COPY bin/pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
