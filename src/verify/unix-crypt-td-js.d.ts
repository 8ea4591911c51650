// The package ships no types. DES crypt(3): 13 characters, the first two are the salt.
declare module 'unix-crypt-td-js' {
  function unixCryptTD(password: string | number[], salt: string | number[]): string;
  export default unixCryptTD;
}
