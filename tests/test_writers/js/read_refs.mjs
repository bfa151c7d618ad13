// Read variables of kerchunk JSON references with zarrita's ReferenceStore and print
// {name: {shape, dtype, data}} as JSON (NaN/Infinity as strings, so JSON keeps them).
// Usage: node read_refs.mjs <refs url> <name> [<name>...]
import * as zarr from "zarrita";
import { ReferenceStore } from "@zarrita/storage";

const [refsUrl, ...names] = process.argv.slice(2);
const store = await ReferenceStore.fromUrl(refsUrl);
const root = zarr.root(store);
const out = {};
for (const name of names) {
  const arr = await zarr.open.v2(root.resolve(name), { kind: "array" });
  const chunk = await zarr.get(arr);
  const values = Array.from(chunk.data, (v) =>
    typeof v === "bigint" ? Number(v) : Number.isFinite(v) || typeof v !== "number" ? v : String(v),
  );
  out[name] = { shape: chunk.shape, dtype: arr.dtype, data: values };
}
console.log(JSON.stringify(out));
