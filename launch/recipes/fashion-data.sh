# Sourced by the Fashion-MNIST recipes, not run: sets data to
# data/fashion-mnist.h5, prepared on first use from Debian's
# dataset-fashion-mnist (IDX files in /usr/share/datasets/fashion-mnist).
data=data/fashion-mnist.h5
idx=/usr/share/datasets/fashion-mnist
if [[ ! -e $data ]]; then
    if [[ ! -d $idx ]]; then
        echo "$(basename "$0"): error: $data is missing, and so is $idx (apt-get install" \
            "dataset-fashion-mnist, or python -m distnn.data prepare --idx DIR --out $data)" >&2
        exit 2
    fi
    "${PYTHON:-python}" -m distnn.data prepare --idx "$idx" --out "$data" || exit 1
fi
