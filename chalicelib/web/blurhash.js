// BlurHash decoder: an independent implementation of the published BlurHash algorithm
// (https://blurha.sh; its reference implementations are MIT-licensed, see
// LICENSE-blurhash.txt). A hash is a base-83 string: a size flag (number of cosine
// components in x and y), a quantised maximum AC value, the DC colour (sRGB, 24 bits),
// then 2 characters per AC component. decode() returns RGBA pixels for a canvas.

const DIGITS =
  "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

function decode83(text) {
  let value = 0;
  for (const character of text) {
    const digit = DIGITS.indexOf(character);
    if (digit < 0) throw new Error(`blurhash: invalid character ${JSON.stringify(character)}`);
    value = value * 83 + digit;
  }
  return value;
}

function srgbToLinear(value) {
  const v = value / 255;
  return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
}

function linearToSrgb(value) {
  const v = Math.max(0, Math.min(1, value));
  return v <= 0.0031308
    ? Math.round(v * 12.92 * 255 + 0.5)
    : Math.round((1.055 * Math.pow(v, 1 / 2.4) - 0.055) * 255 + 0.5);
}

function signPow(value, exponent) {
  return Math.sign(value) * Math.pow(Math.abs(value), exponent);
}

function decodeDc(value) {
  return [srgbToLinear(value >> 16), srgbToLinear((value >> 8) & 255), srgbToLinear(value & 255)];
}

function decodeAc(value, maximum) {
  const r = Math.floor(value / (19 * 19));
  const g = Math.floor(value / 19) % 19;
  const b = value % 19;
  return [
    signPow((r - 9) / 9, 2) * maximum,
    signPow((g - 9) / 9, 2) * maximum,
    signPow((b - 9) / 9, 2) * maximum,
  ];
}

/** Whether `hash` is a well-formed BlurHash (length matches its component count). */
export function isBlurhash(hash) {
  if (typeof hash !== "string" || hash.length < 6) return false;
  try {
    const flag = decode83(hash[0]);
    const componentsX = (flag % 9) + 1;
    const componentsY = Math.floor(flag / 9) + 1;
    decode83(hash);
    return hash.length === 4 + 2 * componentsX * componentsY;
  } catch {
    return false;
  }
}

/**
 * Decode `hash` into `width` x `height` RGBA pixels (a Uint8ClampedArray for ImageData).
 * `punch` > 1 exaggerates contrast. Throws Error on a malformed hash.
 */
export function decode(hash, width, height, punch = 1) {
  if (!isBlurhash(hash)) throw new Error("blurhash: malformed hash");
  const flag = decode83(hash[0]);
  const componentsX = (flag % 9) + 1;
  const componentsY = Math.floor(flag / 9) + 1;
  const maximum = ((decode83(hash[1]) + 1) / 166) * punch;
  const colors = [];
  for (let i = 0; i < componentsX * componentsY; i++) {
    colors.push(
      i === 0
        ? decodeDc(decode83(hash.substring(2, 6)))
        : decodeAc(decode83(hash.substring(4 + i * 2, 6 + i * 2)), maximum),
    );
  }
  const pixels = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let j = 0; j < componentsY; j++) {
        const basisY = Math.cos((Math.PI * y * j) / height);
        for (let i = 0; i < componentsX; i++) {
          const basis = Math.cos((Math.PI * x * i) / width) * basisY;
          const color = colors[i + j * componentsX];
          r += color[0] * basis;
          g += color[1] * basis;
          b += color[2] * basis;
        }
      }
      const offset = 4 * (x + y * width);
      pixels[offset] = linearToSrgb(r);
      pixels[offset + 1] = linearToSrgb(g);
      pixels[offset + 2] = linearToSrgb(b);
      pixels[offset + 3] = 255;
    }
  }
  return pixels;
}

/** Paint `hash` onto `canvas` (its own width/height); false if the hash is unusable. */
export function paint(canvas, hash) {
  if (!isBlurhash(hash)) return false;
  const context = canvas.getContext("2d");
  if (!context) return false;
  const image = context.createImageData(canvas.width, canvas.height);
  image.data.set(decode(hash, canvas.width, canvas.height));
  context.putImageData(image, 0, 0);
  return true;
}
