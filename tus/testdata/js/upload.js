// Uploads one file to filegate's tus door with tus-js-client (the version
// pinned in the repository's package.json), for the Go tests in tus/.
//
//   node upload.js --endpoint URL --file PATH --user NAME --password PW
//                  [--folder /path] [--name NAME] [--chunk BYTES]
//                  [--url-file PATH] [--resume] [--abort-at FRACTION]
//
// --url-file receives the upload URL as soon as it is known; with
// --resume the upload continues at the URL read from it, as a new client
// process would after a crash. --abort-at stops the upload (without
// terminating it) once that fraction of the file has been sent, and exits
// with status 3. On success it prints one JSON line {"url", "bytes"}.
'use strict'

const fs = require('fs')
const tus = require('tus-js-client')

function args() {
  const out = {}
  const a = process.argv.slice(2)
  for (let i = 0; i < a.length; i++) {
    if (!a[i].startsWith('--')) throw new Error('unexpected argument ' + a[i])
    const k = a[i].slice(2)
    if (k === 'resume') out.resume = true
    else out[k] = a[++i]
  }
  return out
}

const o = args()
const size = fs.statSync(o.file).size
const opts = {
  endpoint: o.endpoint,
  chunkSize: o.chunk ? Number(o.chunk) : Infinity,
  retryDelays: [100, 300, 600, 1000, 2000, 3000, 3000, 5000, 5000, 5000, 5000],
  headers: { Authorization: 'Basic ' + Buffer.from(o.user + ':' + o.password).toString('base64') },
  metadata: { filename: o.name || require('path').basename(o.file), filetype: 'application/octet-stream' },
  uploadSize: size,
  storeFingerprintForResuming: false,
  removeFingerprintOnSuccess: true,
}
if (o.folder) opts.metadata.folder = o.folder
if (o.resume) opts.uploadUrl = fs.readFileSync(o['url-file'], 'utf8').trim()

let aborted = false
let upload
opts.onAfterResponse = (req, res) => {
  if (o['url-file'] && upload && upload.url) fs.writeFileSync(o['url-file'], upload.url)
}
opts.onProgress = (sent, total) => {
  if (o['abort-at'] && !aborted && sent >= Number(o['abort-at']) * total) {
    aborted = true
    upload.abort(false).then(() => {
      if (o['url-file'] && upload.url) fs.writeFileSync(o['url-file'], upload.url)
      console.log(JSON.stringify({ aborted: true, url: upload.url, sent }))
      process.exit(3)
    })
  }
}
opts.onError = (err) => {
  console.error('upload failed: ' + err)
  process.exit(1)
}
opts.onSuccess = () => {
  console.log(JSON.stringify({ url: upload.url, bytes: size }))
  process.exit(0)
}

upload = new tus.Upload(fs.createReadStream(o.file), opts)
upload.start()
